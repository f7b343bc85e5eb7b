from clearhouse.cli import main

main()
