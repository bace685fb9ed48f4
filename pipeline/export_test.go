package pipeline

// Err returns the pipeline's build error, as Stage and Run do.
func (p *Pipeline[In, Out]) Err() error { return p.buildErr() }
