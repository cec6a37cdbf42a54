from steps.dvc_fetch.cli import main

main()
