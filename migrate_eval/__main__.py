from migrate_eval.cli import main

main()
