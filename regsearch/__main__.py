from regsearch.cli.app import main

main()
