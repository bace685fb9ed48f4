// Package priority marks how important a call is, so that the concerns
// that refuse work under overload refuse the unimportant work first.
//
// # Levels
//
// A call is [Critical], [Default] (the zero value, and the level of a call
// nobody marked) or [Sheddable]. The caller marks it in its context:
//
//	ctx = priority.With(ctx, priority.Sheddable) // a batch job
//
// Backpressure, the adaptive limit, the throttler and httpx's Protector
// read the level with [From] when their Config turns priorities on, and
// shed lower levels first, so under overload a sheddable call is refused
// before a default one, and a default one before a critical one, while a
// critical call can use the capacity the others leave unused. The
// concurrency limits do it with [Shares]: a level may fill only its share
// of the limit, in the same single atomic admission as without
// priorities, so no interleaving lets the total exceed the limit. The
// throttler, which refuses a share of calls rather than bounding work in
// flight, gives its refusals to the lowest levels first.
//
// # Across processes
//
// The level travels in the HTTP header [Header] ("Brace-Priority") and the
// gRPC metadata key [MetadataKey] ("brace-priority"), whose value is the
// level's name. httpx and grpcx send it from the context, and read it on
// the server only when configured to trust it: a level from outside is a
// claim, and a client that marks everything critical must not be able to
// push other clients' work out. An unknown name in a header is read as
// Default and logged ([Parse]), never an error for the request.
//
// # Cost
//
// [From] is one context lookup; concerns do it only when priorities are
// on. [With] allocates one context node.
package priority
