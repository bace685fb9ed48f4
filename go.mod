module github.com/brace-go/brace

go 1.25.0

require (
	github.com/google/go-cmp v0.7.0
	github.com/lmittmann/tint v1.2.1
	go.uber.org/goleak v1.3.0
	golang.org/x/time v0.15.0
)
