from monitor.app.cli import main

main()
