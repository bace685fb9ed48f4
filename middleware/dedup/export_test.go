package dedup

// OnNewTable makes g call f with a func that returns the number of running
// calls and cached results of each table (decorated stage) built after it.
func OnNewTable(g *Group, f func(size func() int)) { g.newTable = f }
