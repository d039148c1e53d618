// switchyard-epp-client: a test driver for the endpoint picker that speaks ext_proc through Envoy's
// own published Go bindings (github.com/envoyproxy/go-control-plane, envoy/service/ext_proc/v3) and
// grpc-go, so the tests check Switchyard's hand-written protobuf code against the real schema, not
// against itself.
//
// It reads commands as JSON lines on stdin and answers each with one JSON line on stdout. Messages
// are written in protojson, the canonical JSON mapping of the published protos:
//
//	{"seq":1,"op":"open","id":"a"}                          open a Process stream
//	{"seq":2,"op":"send","id":"a","msg":{...}}              send a ProcessingRequest
//	{"seq":3,"op":"recv","id":"a","timeoutMs":5000}         next ProcessingResponse, or eof/error/timeout
//	{"seq":4,"op":"close","id":"a"}                         half-close (CloseSend)
//	{"seq":5,"op":"cancel","id":"a"}                        cancel the stream
//	{"seq":6,"op":"health","service":"readiness"}           grpc.health.v1 Check
//
// Usage: switchyard-epp-client HOST:PORT
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
)

type command struct {
	Seq       int             `json:"seq"`
	Op        string          `json:"op"`
	ID        string          `json:"id"`
	Msg       json.RawMessage `json:"msg"`
	TimeoutMs int             `json:"timeoutMs"`
	Service   string          `json:"service"`
}

type received struct {
	msg *extprocv3.ProcessingResponse
	err error
}

type stream struct {
	client extprocv3.ExternalProcessor_ProcessClient
	cancel context.CancelFunc
	in     chan received
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: switchyard-epp-client HOST:PORT")
		os.Exit(2)
	}
	conn, err := grpc.NewClient(os.Args[1], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer conn.Close()
	ext := extprocv3.NewExternalProcessorClient(conn)
	health := healthpb.NewHealthClient(conn)
	streams := map[string]*stream{}
	out := json.NewEncoder(os.Stdout)
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 64<<20)
	for in.Scan() {
		var c command
		reply := map[string]any{}
		if err := json.Unmarshal(in.Bytes(), &c); err != nil {
			reply["error"] = map[string]any{"message": "bad command: " + err.Error()}
			_ = out.Encode(reply)
			continue
		}
		reply["seq"] = c.Seq
		switch c.Op {
		case "open":
			ctx, cancel := context.WithCancel(context.Background())
			client, err := ext.Process(ctx)
			if err != nil {
				cancel()
				reply["error"] = errorOf(err)
				break
			}
			s := &stream{client: client, cancel: cancel, in: make(chan received, 1024)}
			streams[c.ID] = s
			go func() {
				for {
					msg, err := client.Recv()
					s.in <- received{msg, err}
					if err != nil {
						return
					}
				}
			}()
			reply["ok"] = true
		case "send":
			s := streams[c.ID]
			if s == nil {
				reply["error"] = map[string]any{"message": "no stream " + c.ID}
				break
			}
			var req extprocv3.ProcessingRequest
			if err := protojson.Unmarshal(c.Msg, &req); err != nil {
				reply["error"] = map[string]any{"message": "protojson: " + err.Error()}
				break
			}
			if err := s.client.Send(&req); err != nil {
				reply["error"] = errorOf(err)
				break
			}
			reply["ok"] = true
		case "recv":
			s := streams[c.ID]
			if s == nil {
				reply["error"] = map[string]any{"message": "no stream " + c.ID}
				break
			}
			timeout := time.Duration(c.TimeoutMs) * time.Millisecond
			if timeout <= 0 {
				timeout = 10 * time.Second
			}
			select {
			case r := <-s.in:
				switch {
				case r.err == io.EOF:
					reply["eof"] = true
				case r.err != nil:
					reply["error"] = errorOf(r.err)
				default:
					b, err := protojson.MarshalOptions{UseProtoNames: false}.Marshal(r.msg)
					if err != nil {
						reply["error"] = map[string]any{"message": err.Error()}
					} else {
						reply["msg"] = json.RawMessage(b)
					}
				}
			case <-time.After(timeout):
				reply["timeout"] = true
			}
		case "close":
			if s := streams[c.ID]; s != nil {
				_ = s.client.CloseSend()
			}
			reply["ok"] = true
		case "cancel":
			if s := streams[c.ID]; s != nil {
				s.cancel()
				delete(streams, c.ID)
			}
			reply["ok"] = true
		case "health":
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			r, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: c.Service})
			cancel()
			if err != nil {
				reply["error"] = errorOf(err)
			} else {
				reply["status"] = r.GetStatus().String()
			}
		default:
			reply["error"] = map[string]any{"message": "unknown op " + c.Op}
		}
		if err := out.Encode(reply); err != nil {
			os.Exit(1)
		}
	}
}

func errorOf(err error) map[string]any {
	s, _ := status.FromError(err)
	return map[string]any{"code": s.Code().String(), "message": s.Message()}
}
