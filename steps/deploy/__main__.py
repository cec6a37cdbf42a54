from steps.deploy.cli import main

main()
