// Package devserver holds how this project runs `temporal server start-dev`
// with a SQLite file: the dev stack, the fault suite and the streaming
// benchmark all start it the same way.
package devserver

// StorageArgs are the start-dev flags that keep its state in dbFile.
//
// SQLite's default rollback journal syncs the disk on every transaction, and
// the dev server writes one per task: on a 2-core machine it then dispatches
// about 6 activity and 6 workflow tasks a second, fewer than `make dev`'s
// generator creates, so its backlogs grow until sessions wait minutes for
// their Parquet. With the write-ahead log and synchronous=normal a commit is
// an append, and the backlogs stay empty at the same load. A process that is
// killed loses nothing this way (the log is in the file system); only a
// power cut can drop the last commits, which a dev server may afford.
func StorageArgs(dbFile string) []string {
	return []string{
		"--db-filename", dbFile,
		"--sqlite-pragma", "journal_mode=wal",
		"--sqlite-pragma", "synchronous=normal",
	}
}
