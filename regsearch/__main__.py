from regsearch.cli import main

main()
