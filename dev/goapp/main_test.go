package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestRoutes(t *testing.T) {
	h := newHandler("v2")
	tests := []struct {
		name       string
		method     string
		path       string
		body       string
		wantStatus int
		wantBody   string
	}{
		{"healthz", http.MethodGet, "/healthz", "", http.StatusOK, "ok"},
		{"echo", http.MethodPost, "/", "hello mesh", http.StatusOK, "hello mesh"},
		{"echo empty", http.MethodPost, "/", "", http.StatusOK, ""},
		{"unknown path", http.MethodGet, "/nope", "", http.StatusNotFound, ""},
		{"echo only at root", http.MethodPost, "/nope", "x", http.StatusNotFound, ""},
		{"get root", http.MethodGet, "/", "", http.StatusMethodNotAllowed, ""},
		{"post fortune", http.MethodPost, "/fortune", "", http.StatusMethodNotAllowed, ""},
		{"delete healthz", http.MethodDelete, "/healthz", "", http.StatusMethodNotAllowed, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, tt.path, strings.NewReader(tt.body))
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)

			if rec.Code != tt.wantStatus {
				t.Fatalf("status = %d, want %d", rec.Code, tt.wantStatus)
			}
			if got := rec.Header().Get("x-version"); got != "v2" {
				t.Errorf("x-version = %q, want %q", got, "v2")
			}
			if tt.wantStatus == http.StatusOK && rec.Body.String() != tt.wantBody {
				t.Errorf("body = %q, want %q", rec.Body.String(), tt.wantBody)
			}
		})
	}
}

func TestFortune(t *testing.T) {
	rec := httptest.NewRecorder()
	newHandler("v1").ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/fortune", nil))

	if rec.Code != http.StatusOK {
		t.Fatalf("status = %d, want 200", rec.Code)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type = %q, want text/plain", ct)
	}
	line := strings.TrimSuffix(rec.Body.String(), "\n")
	if !slices.Contains(fortunes, line) {
		t.Errorf("body %q is not a known fortune", line)
	}
}

func TestEchoKeepsContentType(t *testing.T) {
	req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(`{"a":1}`))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	newHandler("v1").ServeHTTP(rec, req)

	if got := rec.Header().Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", got)
	}
}

func TestEchoTooLarge(t *testing.T) {
	body := strings.NewReader(strings.Repeat("x", maxEchoBytes+1))
	rec := httptest.NewRecorder()
	newHandler("v1").ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", body))

	if rec.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("status = %d, want 413", rec.Code)
	}
}

func TestListenAddr(t *testing.T) {
	tests := []struct {
		env  map[string]string
		want string
	}{
		{nil, ":8080"},
		{map[string]string{"PORT": "9090"}, ":9090"},
		{map[string]string{"HOST": "127.0.0.1"}, "127.0.0.1:8080"},
		{map[string]string{"HOST": "::1", "PORT": "9090"}, "[::1]:9090"},
		{map[string]string{"LISTEN": "127.0.0.1:18081", "HOST": "0.0.0.0", "PORT": "1"}, "127.0.0.1:18081"},
	}
	for _, tt := range tests {
		getenv := func(k string) string { return tt.env[k] }
		if got := listenAddr(getenv); got != tt.want {
			t.Errorf("listenAddr(%v) = %q, want %q", tt.env, got, tt.want)
		}
	}
}

func TestRunShutsDownOnCancel(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, ln, "v9") }()

	resp, err := http.Get("http://" + ln.Addr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if got := resp.Header.Get("x-version"); got != "v9" {
		t.Errorf("x-version = %q, want v9", got)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run returned %v, want nil", err)
		}
	case <-time.After(shutdownTimeout + time.Second):
		t.Fatal("run did not return after cancel")
	}
}
