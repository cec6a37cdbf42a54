from shared.data_registry.cli import main

main()
