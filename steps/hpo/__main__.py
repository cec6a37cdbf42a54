from steps.hpo.cli import main

main()
