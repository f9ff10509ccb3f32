package jobs

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/sirupsen/logrus"
)

func TestEmbeddedRedisRunsAsynqTasks(t *testing.T) {
	t.Parallel()
	e, err := StartEmbedded()
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	opt, err := RedisOpt(e.URL())
	if err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	rdb, err := Connect(e.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	srv := NewServer(rdb, ServerConfig{Concurrency: 2, Log: log})
	done := make(chan string, 1)
	mux := asynq.NewServeMux()
	mux.HandleFunc("t:echo", func(_ context.Context, tk *asynq.Task) error {
		done <- string(tk.Payload())
		return nil
	})
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	cl := asynq.NewClient(opt)
	defer cl.Close()
	if _, err := cl.Enqueue(asynq.NewTask("t:echo", []byte("hi")), asynq.Queue(QueueCritical)); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-done:
		if got != "hi" {
			t.Fatalf("payload %q", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("task never ran on embedded redis")
	}
}
