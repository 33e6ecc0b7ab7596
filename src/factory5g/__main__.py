from factory5g.cli import main

main()
