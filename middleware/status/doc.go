// Package status is a live status page of a program's Brace concerns: an
// [http.Handler], mountable like net/http/pprof, that shows which
// breakers are open and since when, what is being refused and why, and
// the concerns' gauges, as HTML for people and JSON for scripts.
//
//	page, err := status.New(status.Config{})
//	if err != nil { ... }
//	b, err := breaker.New(breaker.Config{Name: "payments", Observer: middleware.Observers(page, logObs)})
//	status.Register(page, "breaker", "payments", b.Stats) // optional: live gauges
//	mux.Handle("/debug/brace", page)
//
// # What it shows
//
// A [Page] is a [middleware.Observer]. For every instance (an event's
// Concern and Name) it has seen, it keeps:
//
//   - the current state and since when, from StateChanged events, and the
//     last Config.Transitions changes (from, to, reason, failures, the
//     error that opened a breaker), drawn as a timeline in inline SVG;
//   - counts of each kind of event and reason (rejected "open", rejected
//     "shed", retry, timed-out, ...) over the last minute, in steps of 5
//     seconds, and since it was first seen;
//   - when registered with [Register], the fields of its Stats, read on
//     every view: in-flight calls, capacity, limit, queued calls,
//     available tokens, counts. A Stats field named State overrides the
//     state seen in events, so a breaker whose open time has passed shows
//     half-open before its next call.
//
// Only what the concerns report is shown. A call that succeeds emits no
// event, so the page shows rates of refusals, retries, timeouts and the
// like per minute, but a success rate only where an instance's Stats
// count successes (a breaker's Counts), never a number it would have to
// invent.
//
// # Serving
//
// [Page.ServeHTTP] answers GET and HEAD with the HTML page, which reloads
// itself every Config.Refresh through a meta element: no script, no
// asset from elsewhere, so it works offline and under a strict
// Content-Security-Policy (which it sends). The query format=json, or an
// Accept header asking for application/json, gets the same data as JSON.
// The page has no access control of its own: mount it where only
// operators reach it, as with net/http/pprof.
//
// # Actions
//
// The page is read-only unless Config.Actions supplies operator actions,
// such as a breaker's ForceOpen and Reset. They are buttons that POST; a
// GET never runs one. A POST must pass [http.CrossOriginProtection]'s
// check (a browser's cross-site request is refused with 403), which lets
// requests from non-browser clients through: protect the route with your
// own authentication as well.
//
// # Cost and limits
//
// Observe, called for each event, takes a read lock on the page's table
// and the instance's mutex, and allocates only when an instance or a
// kind of event is seen for the first time; concerns emit no event on
// their success paths, so the page costs them nothing there. Memory is
// bounded: at most Config.MaxInstances instances (events of others are
// counted as dropped), Config.Transitions changes and 32 kinds of event
// per instance, and texts cut to 200 bytes. A view of the page reads
// every instance and calls every Stats source, with none of the page's
// locks held. Nothing runs in the background: a Page starts no goroutine
// and no timer, and computes the last minute when it is viewed.
//
// A Page is safe for concurrent use.
package status
