//! The client's cron run, `rsbackup run`: hooks, `prepare`, rsync over ssh, `complete`, and the
//! job and error reports.
