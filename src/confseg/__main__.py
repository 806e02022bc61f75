from confseg.cli import main

main()
