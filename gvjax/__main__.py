from gvjax.cli import main

main()
