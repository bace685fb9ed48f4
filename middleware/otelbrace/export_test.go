package otelbrace

// Exported for the tests (package otelbrace_test), which check the names
// the docs promise.
const (
	ScopeName       = scopeName
	ConcernKey      = concernKey
	NameKey         = nameKey
	AttemptKey      = attemptKey
	DelayKey        = delayKey
	WaitKey         = waitKey
	InFlightKey     = inFlightKey
	LimitKey        = limitKey
	FailuresKey     = failuresKey
	AttemptSpanName = attemptSpanName
)
