package status_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/breaker"
	"github.com/brace-go/brace/middleware/status"
)

// The page observes a breaker; after the breaker opens, its JSON shows
// the state, the transition and the rejections of the last minute. Times
// are replaced by "…" here so that the output does not change.
func Example() {
	page, err := status.New(status.Config{})
	if err != nil {
		panic(err)
	}
	b, err := breaker.New(breaker.Config{Name: "payments", Threshold: 1, Observer: page})
	if err != nil {
		panic(err)
	}
	call := middleware.Apply(func(context.Context, string) (string, error) {
		return "", errors.New("connection refused")
	}, breaker.Middleware[string, string](b))
	call(context.Background(), "order 1") // fails: the breaker opens
	call(context.Background(), "order 2") // refused: the breaker is open

	// A program mounts it with http.Handle("/debug/brace", page).
	w := httptest.NewRecorder()
	page.ServeHTTP(w, httptest.NewRequest("GET", "/debug/brace?format=json", nil))
	fmt.Println(withoutTimes(w.Body.Bytes()))
	// Output:
	// {
	//   "title": "Brace status",
	//   "now": "…",
	//   "dropped": 0,
	//   "instances": [
	//     {
	//       "concern": "breaker",
	//       "name": "payments",
	//       "state": "open",
	//       "since": "…",
	//       "first_seen": "…",
	//       "last_event": "…",
	//       "transitions_total": 1,
	//       "transitions": [
	//         {
	//           "at": "…",
	//           "from": "closed",
	//           "to": "open",
	//           "failures": 1,
	//           "error": "connection refused"
	//         }
	//       ],
	//       "events": [
	//         {
	//           "kind": "rejected",
	//           "reason": "open",
	//           "last_minute": 1,
	//           "total": 1
	//         },
	//         {
	//           "kind": "state-changed",
	//           "last_minute": 1,
	//           "total": 1
	//         }
	//       ]
	//     }
	//   ]
	// }
}

// times matches the times in the page's JSON.
var times = regexp.MustCompile(`"(now|since|first_seen|last_event|at)":"[^"]*"`)

// withoutTimes indents the page's JSON and replaces its times by "…".
func withoutTimes(data []byte) string {
	var b bytes.Buffer
	if err := json.Indent(&b, times.ReplaceAll(data, []byte(`"$1":"…"`)), "", "  "); err != nil {
		panic(err)
	}
	return b.String()
}

// Operator actions: the program offers a breaker's ForceOpen and Reset
// as buttons. They run only for a POST that passes the cross-origin
// check; a GET never runs them.
func ExampleAction() {
	b, err := breaker.New(breaker.Config{Name: "payments"})
	if err != nil {
		panic(err)
	}
	page, err := status.New(status.Config{Actions: []status.Action{
		{Concern: "breaker", Name: "payments", Label: "force open", Do: b.ForceOpen},
		{Concern: "breaker", Name: "payments", Label: "reset", Do: b.Reset},
	}})
	if err != nil {
		panic(err)
	}
	status.Register(page, "breaker", "payments", b.Stats)

	do := func(method, action, site string) {
		form := url.Values{"concern": {"breaker"}, "name": {"payments"}, "action": {action}}
		r := httptest.NewRequest(method, "/debug/brace", strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.Header.Set("Sec-Fetch-Site", site) // set by browsers
		w := httptest.NewRecorder()
		page.ServeHTTP(w, r)
		fmt.Printf("%s %s (%s): %d, breaker %v\n", method, action, site, w.Code, b.State())
	}
	do(http.MethodGet, "force open", "same-origin")
	do(http.MethodPost, "force open", "cross-site")
	do(http.MethodPost, "force open", "same-origin")
	do(http.MethodPost, "reset", "same-origin")
	// Output:
	// GET force open (same-origin): 200, breaker closed
	// POST force open (cross-site): 403, breaker closed
	// POST force open (same-origin): 303, breaker forced-open
	// POST reset (same-origin): 303, breaker closed
}
