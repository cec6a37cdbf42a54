from steps.tokenize.cli import main

main()
