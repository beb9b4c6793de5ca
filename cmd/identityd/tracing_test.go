package main

import (
	"context"
	"log/slog"
	"testing"
)

func TestTracingWanted(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		env  map[string]string
		want bool
	}{
		{nil, false},
		{map[string]string{"OTEL_SERVICE_NAME": "id"}, false},
		{map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, false},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"}, true},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, true},
		{map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, true},
		{map[string]string{"OTEL_TRACES_EXPORTER": "console"}, true},
		{map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"}, false},
		{map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, false},
		{map[string]string{"OTEL_SDK_DISABLED": "false", "OTEL_TRACES_EXPORTER": "otlp"}, true},
	} {
		if got := tracingWanted(func(k string) string { return c.env[k] }); got != c.want {
			t.Errorf("tracingWanted(%v) = %v, want %v", c.env, got, c.want)
		}
	}
}

// Off, no tracer provider is made (and the server gets none).
func TestNewTracerProviderOff(t *testing.T) {
	t.Parallel()
	tp, err := newTracerProvider(context.Background(), func(string) string { return "" }, slog.New(slog.DiscardHandler))
	if err != nil || tp != nil {
		t.Fatalf("newTracerProvider with no OTEL_* = %v, %v; want nil, nil", tp, err)
	}
	if tracerProvider(tp) != nil {
		t.Fatal("tracerProvider(nil) is a non-nil interface: the server would trace")
	}
}
