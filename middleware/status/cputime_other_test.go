//go:build !unix

package status_test

import "time"

// cpuTime is not measured here: TestRender1000 falls back on wall time.
func cpuTime() time.Duration { return 0 }
