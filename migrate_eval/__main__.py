from migrate_eval.cli import console_main

console_main()
