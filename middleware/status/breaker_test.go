package status_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/breaker"
	"github.com/brace-go/brace/middleware/status"
)

// TestBreaker follows a real breaker through open, half-open (which the
// breaker reports in its Stats before any event) and closed again.
func TestBreaker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		page := newPage(t, status.Config{})
		b, err := breaker.New(breaker.Config{Name: "payments", Threshold: 2, OpenTimeout: 10 * time.Second, Observer: page})
		if err != nil {
			t.Fatal(err)
		}
		if err := status.Register(page, "breaker", "payments", b.Stats); err != nil {
			t.Fatal(err)
		}
		fail := true
		call := middleware.Apply(func(context.Context, int) (int, error) {
			if fail {
				return 0, errors.New("connection refused")
			}
			return 1, nil
		}, breaker.Middleware[int, int](b))
		ctx := context.Background()

		state := func() (string, time.Time, float64) {
			t.Helper()
			in := getJSON(t, page).Instances[0]
			rejected, _ := in.Stats["Rejected"].(float64)
			return in.State, in.Since, rejected
		}
		if s, since, _ := state(); s != "closed" || !since.IsZero() {
			t.Errorf("registered: %q since %v, want closed since unknown", s, since)
		}
		t0 := time.Now()
		call(ctx, 1)
		call(ctx, 2) // opens
		call(ctx, 3) // refused
		if s, since, rejected := state(); s != "open" || !since.Equal(t0) || rejected != 1 {
			t.Errorf("opened: %q since %v, %v rejected; want open since %v, 1", s, since, rejected, t0)
		}
		time.Sleep(10 * time.Second)
		if s, since, _ := state(); s != "half-open" || !since.IsZero() {
			t.Errorf("open time passed: %q since %v, want half-open (from Stats) since unknown", s, since)
		}
		fail = false
		call(ctx, 4) // the probe succeeds
		t1 := time.Now()
		in := getJSON(t, page).Instances[0]
		if in.State != "closed" || !in.Since.Equal(t1) {
			t.Errorf("closed again: %q since %v, want closed since %v", in.State, in.Since, t1)
		}
		var got []string
		for _, tr := range in.Transitions {
			got = append(got, tr.From+" → "+tr.To)
		}
		if diff := cmp.Diff([]string{"half-open → closed", "open → half-open", "closed → open"}, got); diff != "" {
			t.Errorf("transitions (-want +got):\n%s", diff)
		}
	})
}
