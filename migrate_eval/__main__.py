from migrate_eval.cli import console_script

console_script()
