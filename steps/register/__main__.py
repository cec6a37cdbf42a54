from steps.register.cli import main

main()
