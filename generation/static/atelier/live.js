// The live status of every page (header balance, activity banner, queue panel).
