package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/brace-go/brace/middleware"
)

// class is who is asking: a person waiting in a chat window, or a batch job.
type class int8

const (
	interactive class = iota
	batch
	classes
)

func (c class) String() string {
	if c == interactive {
		return "interactive"
	}
	return "batch"
}

// prompt is one request to the gateway. It is comparable: identical prompts
// to the same provider from the same class are one dedup key.
type prompt struct {
	Provider  string
	Class     class
	Text      string
	MaxTokens int
}

// completion is the gateway's answer.
type completion struct {
	Provider string
	Text     string
	Usage    usage
}

// The workload, the same (seeded) for both runs.
const (
	workloadFor   = 2500 * time.Millisecond // two and a half provider minutes
	interactiveEv = 40 * time.Millisecond
	batchEv       = 16 * time.Millisecond
	documents     = 80 // the batch job's corpus: some documents come up more than once
	// Deadlines of the callers (on the compressed scale, like everything).
	interactiveDeadline = 2500 * time.Millisecond
	batchDeadline       = 4 * time.Second
)

var providerNames = [...]string{"alpha", "beta"}

var popular = [...]string{
	"What is the status of my order?",
	"How do I reset my password?",
	"What are your opening hours?",
	"Can I change my delivery address?",
}

// arrival is a prompt sent at a time from the start of the run.
type arrival struct {
	at time.Duration
	p  prompt
}

// workload returns the run's arrivals, in time order:
//   - interactive: a prompt every 40ms, to either provider, 30–120 tokens,
//     answers of up to 120 tokens; one arrival in five is a popular question
//     asked by three users at the same instant;
//   - batch: a summary request every 16ms for one of 80 documents
//     (300–900 tokens, answers of up to 240), each document to a fixed
//     provider, so a document that comes up twice is an identical prompt.
func workload(seed uint64) []arrival {
	rng := rand.New(rand.NewPCG(seed, seed))
	var as []arrival
	for i := range int(workloadFor / interactiveEv) {
		at := time.Duration(i) * interactiveEv
		prov := providerNames[rng.IntN(len(providerNames))]
		if rng.IntN(5) == 0 {
			p := prompt{Provider: prov, Class: interactive, Text: popular[rng.IntN(len(popular))], MaxTokens: 90}
			for range 3 {
				as = append(as, arrival{at, p})
			}
			continue
		}
		text := fmt.Sprintf("user %d asks: %s", i, filler(30+rng.IntN(90)))
		as = append(as, arrival{at, prompt{Provider: prov, Class: interactive, Text: text, MaxTokens: 60 + rng.IntN(61)}})
	}
	for i := range int(workloadFor / batchEv) {
		doc := rng.IntN(documents)
		drng := rand.New(rand.NewPCG(uint64(doc), seed)) // the document's own length
		text := fmt.Sprintf("Summarize document %d: %s", doc, filler(300+drng.IntN(600)))
		as = append(as, arrival{time.Duration(i) * batchEv, prompt{Provider: providerNames[doc%2], Class: batch, Text: text, MaxTokens: 240}})
	}
	slices.SortStableFunc(as, func(a, b arrival) int { return int(a.at - b.at) })
	return as
}

// filler is text of about n tokens.
func filler(n int) string { return strings.Repeat("lorem ipsum ", n/3+1)[:4*n] }

// outcome is what one caller got.
type outcome struct {
	p       prompt
	err     error
	latency time.Duration
	served  string // the provider that answered
}

// drive sends every arrival at its time through serve, each from its own
// goroutine with its class's deadline and priority, and returns what each
// caller got, once all have returned.
func drive(arrivals []arrival, serve middleware.Stage[prompt, completion], mark func(context.Context, class) context.Context) []outcome {
	out := make([]outcome, len(arrivals))
	var wg sync.WaitGroup
	start := time.Now()
	for i, a := range arrivals {
		if d := a.at - time.Since(start); d > 0 {
			time.Sleep(d)
		}
		wg.Go(func() {
			deadline := interactiveDeadline
			if a.p.Class == batch {
				deadline = batchDeadline
			}
			ctx, cancel := context.WithTimeout(context.Background(), deadline)
			defer cancel()
			ctx = mark(ctx, a.p.Class)
			t0 := time.Now()
			c, err := serve(ctx, a.p)
			out[i] = outcome{p: a.p, err: err, latency: time.Since(t0), served: c.Provider}
		})
	}
	wg.Wait()
	return out
}
