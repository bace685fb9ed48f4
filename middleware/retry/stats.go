package retry

import "sync/atomic"

// Counter counts what the Retry middlewares it is given to (Config.Counter)
// do. The zero value is ready to use, a Counter is safe for concurrent use,
// and one Counter may be shared by several middlewares to count them
// together. It costs nothing unless set: a nil Config.Counter is one nil
// check per call.
type Counter struct {
	successes, failures, retries, exhausted atomic.Uint64
}

// Stats is a snapshot of a [Counter]. A call is counted when it returns;
// a call whose stage panics is not counted.
type Stats struct {
	Successes uint64 // calls that returned a nil error
	Failures  uint64 // calls that returned an error, Exhausted included
	Retries   uint64 // attempts after the first that were started
	Exhausted uint64 // calls that returned an *ExhaustedError
}

// Calls returns the number of calls that returned: Successes + Failures.
func (s Stats) Calls() uint64 { return s.Successes + s.Failures }

// Attempts returns the number of attempts those calls made: Calls +
// Retries (exact once no call is in flight).
func (s Stats) Attempts() uint64 { return s.Calls() + s.Retries }

// Stats returns the counts so far. A nil Counter returns zero Stats. The
// fields are read one by one, so while calls are running a snapshot may
// be a few counts apart between fields.
func (c *Counter) Stats() Stats {
	if c == nil {
		return Stats{}
	}
	return Stats{
		Successes: c.successes.Load(),
		Failures:  c.failures.Load(),
		Retries:   c.retries.Load(),
		Exhausted: c.exhausted.Load(),
	}
}

// done counts a call that returned err.
func (c *Counter) done(err error) {
	if err == nil {
		c.successes.Add(1)
		return
	}
	c.failures.Add(1)
	if _, ok := err.(*ExhaustedError); ok {
		c.exhausted.Add(1)
	}
}
