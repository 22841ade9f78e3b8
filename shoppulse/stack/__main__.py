from shoppulse.stack.cli import main

main()
