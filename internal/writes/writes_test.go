package writes

import (
	"io"
	"net/url"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/DalgoT4D/prefect-proxy-go/internal/jobs"
	"github.com/DalgoT4D/prefect-proxy-go/internal/prefect"
	"github.com/DalgoT4D/prefect-proxy-go/internal/proxy"
)

// Kinds are asynq task types that queued jobs carry: they never change, and
// each op is on its queue (run/cancel/retry flow runs critical).
func TestOpsKindsAndQueues(t *testing.T) {
	t.Parallel()
	log := logrus.New()
	log.SetOutput(io.Discard)
	ops := New(proxy.New(prefect.New(prefect.Config{BaseURL: &url.URL{Scheme: "http", Host: "127.0.0.1:1"},
		Timeout: time.Second}), log))
	type row struct{ kind, queue string }
	got := []row{
		{ops.AirbyteServerCreate.Kind, ops.AirbyteServerCreate.Queue},
		{ops.AirbyteServerUpdate.Kind, ops.AirbyteServerUpdate.Queue},
		{ops.AirbyteConnectionUpsert.Kind, ops.AirbyteConnectionUpsert.Queue},
		{ops.SecretCreate.Kind, ops.SecretCreate.Queue},
		{ops.SecretUpsert.Kind, ops.SecretUpsert.Queue},
		{ops.BlockDelete.Kind, ops.BlockDelete.Queue},
		{ops.DeploymentCreate.Kind, ops.DeploymentCreate.Queue},
		{ops.DeploymentUpdate.Kind, ops.DeploymentUpdate.Queue},
		{ops.DeploymentEntrypoint.Kind, ops.DeploymentEntrypoint.Queue},
		{ops.DeploymentDelete.Kind, ops.DeploymentDelete.Queue},
		{ops.DeploymentSetSchedule.Kind, ops.DeploymentSetSchedule.Queue},
		{ops.FlowRunCreate.Kind, ops.FlowRunCreate.Queue},
		{ops.FlowRunSchedule.Kind, ops.FlowRunSchedule.Queue},
		{ops.FlowRunDelete.Kind, ops.FlowRunDelete.Queue},
		{ops.FlowRunRetry.Kind, ops.FlowRunRetry.Queue},
		{ops.FlowRunCancel.Kind, ops.FlowRunCancel.Queue},
	}
	want := []row{
		{"block:airbyte-server:create", jobs.QueueDefault},
		{"block:airbyte-server:update", jobs.QueueDefault},
		{"block:airbyte-connection:upsert", jobs.QueueDefault},
		{"block:secret:create", jobs.QueueDefault},
		{"block:secret:upsert", jobs.QueueDefault},
		{"block:delete", jobs.QueueDefault},
		{"deployment:create", jobs.QueueDefault},
		{"deployment:update", jobs.QueueDefault},
		{"deployment:entrypoint", jobs.QueueDefault},
		{"deployment:delete", jobs.QueueDefault},
		{"deployment:set-schedule", jobs.QueueDefault},
		{"flowrun:create", jobs.QueueCritical},
		{"flowrun:schedule", jobs.QueueCritical},
		{"flowrun:delete", jobs.QueueCritical},
		{"flowrun:retry", jobs.QueueCritical},
		{"flowrun:cancel", jobs.QueueCritical},
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("op %d: %v, want %v", i, got[i], want[i])
		}
	}
	ops.Registry() // panics on a kind registered twice
}
