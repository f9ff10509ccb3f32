package worker

import (
	"context"
	"encoding/json"
	"sort"

	"github.com/DalgoT4D/prefect-proxy-go/internal/jobs"
	"github.com/DalgoT4D/prefect-proxy-go/internal/proxy"
)

// WriteOps adapts proxy.WriteOps() to the job runtime, binding svc: the api
// uses the ops' Decode and queue, the worker their Run.
func WriteOps(svc *proxy.Service) []jobs.Op {
	var ops []jobs.Op
	for _, w := range proxy.WriteOps() {
		run := w.Run
		ops = append(ops, jobs.Op{
			Name:   w.Name,
			Queue:  w.Queue,
			Decode: w.Decode,
			Run: func(ctx context.Context, payload json.RawMessage, jobID string) (any, error) {
				return run(ctx, svc, payload, jobID)
			},
		})
	}
	sort.Slice(ops, func(i, j int) bool { return ops[i].Name < ops[j].Name })
	return ops
}
