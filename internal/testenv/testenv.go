// Package testenv holds facts about the test environment that Brace's tests
// need, such as whether the race detector is on (allocation counts are not
// meaningful under -race).
package testenv

// RaceEnabled reports whether the binary was built with -race.
const RaceEnabled = raceEnabled
