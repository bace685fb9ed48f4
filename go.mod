module github.com/brace-go/brace

go 1.26

require (
	github.com/google/go-cmp v0.7.0 // indirect
	github.com/lmittmann/tint v1.2.1 // indirect
	golang.org/x/sync v0.25.0 // indirect
)
