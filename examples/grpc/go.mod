module github.com/brace-go/brace/examples/grpc

go 1.26.0

require (
	github.com/brace-go/brace v0.0.0
	github.com/brace-go/brace/middleware/grpcx v0.0.0
	google.golang.org/grpc v1.85.0
)

require (
	golang.org/x/net v0.60.0 // indirect
	golang.org/x/sys v0.48.0 // indirect
	golang.org/x/text v0.42.0 // indirect
	golang.org/x/time v0.15.0 // indirect
	google.golang.org/genproto/googleapis/rpc v0.0.0-20260817212433-ac3dfec99bb1 // indirect
	google.golang.org/protobuf v1.36.12 // indirect
)

replace (
	github.com/brace-go/brace => ../..
	github.com/brace-go/brace/middleware/grpcx => ../../middleware/grpcx
)
