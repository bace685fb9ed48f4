package priority_test

import (
	"context"
	"math"
	"strings"
	"testing"

	"github.com/brace-go/brace/middleware/priority"
)

func TestWithFrom(t *testing.T) {
	ctx := context.Background()
	if got := priority.From(ctx); got != priority.Default {
		t.Fatalf("From(unmarked) = %v, want default", got)
	}
	for _, l := range []priority.Level{priority.Critical, priority.Default, priority.Sheddable} {
		if got := priority.From(priority.With(ctx, l)); got != l {
			t.Errorf("From(With(%v)) = %v", l, got)
		}
	}
	if got := priority.From(priority.With(ctx, priority.Level(7))); got != priority.Default {
		t.Errorf("With(invalid) stored %v, want default", got)
	}
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want priority.Level
		ok   bool
	}{
		{"critical", priority.Critical, true},
		{" Critical ", priority.Critical, true},
		{"DEFAULT", priority.Default, true},
		{"sheddable", priority.Sheddable, true},
		{"", priority.Default, false},
		{"urgent", priority.Default, false},
		{strings.Repeat("x", 10000), priority.Default, false},
	} {
		got, err := priority.Parse(tc.in)
		if got != tc.want || (err == nil) != tc.ok {
			t.Errorf("Parse(%.20q) = %v, %v; want %v, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
		if err != nil && (!strings.HasPrefix(err.Error(), "priority: ") || len(err.Error()) > 200) {
			t.Errorf("Parse(%.20q) error %q: want a short error starting with the package name", tc.in, err)
		}
	}
	for _, l := range []priority.Level{priority.Critical, priority.Default, priority.Sheddable} {
		if got, err := priority.Parse(l.String()); err != nil || got != l {
			t.Errorf("Parse(%q) = %v, %v", l.String(), got, err)
		}
	}
}

func TestIndexAndString(t *testing.T) {
	seen := map[int]bool{}
	for _, l := range []priority.Level{priority.Critical, priority.Default, priority.Sheddable} {
		i := l.Index()
		if i < 0 || i >= priority.Levels || seen[i] {
			t.Errorf("%v.Index() = %d", l, i)
		}
		seen[i] = true
	}
	if priority.Level(9).Index() != priority.Default.Index() || priority.Level(9).Valid() {
		t.Error("an invalid level should index as default and not be valid")
	}
	if got := priority.Level(9).String(); got != "level(9)" {
		t.Errorf("String = %q", got)
	}
}

func TestShares(t *testing.T) {
	s, err := priority.Shares{}.Resolve("x", "Priorities")
	if err != nil || s.Sheddable != 0.5 || s.Default != 0.9 {
		t.Fatalf("zero Shares resolved to %+v, %v", s, err)
	}
	if got := s.Limit(priority.Sheddable, 10); got != 5 {
		t.Errorf("sheddable limit of 10 = %d, want 5", got)
	}
	if got := s.Limit(priority.Default, 10); got != 9 {
		t.Errorf("default limit of 10 = %d, want 9", got)
	}
	if got := s.Limit(priority.Critical, 10); got != 10 {
		t.Errorf("critical limit of 10 = %d, want 10", got)
	}
	if got := s.Limit(priority.Sheddable, 1); got != 1 {
		t.Errorf("sheddable limit of 1 = %d, want 1", got)
	}
	for _, tc := range []struct {
		s    priority.Shares
		want string
	}{
		{priority.Shares{Sheddable: math.NaN()}, "x: Priorities.Sheddable must be in (0, 1], got NaN"},
		{priority.Shares{Default: 1.5}, "x: Priorities.Default must be in (0, 1], got 1.5"},
		{priority.Shares{Sheddable: -0.1}, "x: Priorities.Sheddable must be in (0, 1], got -0.1"},
		{priority.Shares{Sheddable: 0.8, Default: 0.6}, "x: Priorities.Sheddable (0.8) must not exceed Priorities.Default (0.6)"},
	} {
		_, err := tc.s.Resolve("x", "Priorities")
		if err == nil || err.Error() != tc.want {
			t.Errorf("Resolve(%+v) = %v, want %q", tc.s, err, tc.want)
		}
	}
}
