package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// client speaks to the admin API.
type client struct {
	base  string // scheme://host[:port][/prefix], no trailing slash
	token string
	http  *http.Client
}

func newClient(addr, token string, timeout time.Duration) (*client, error) {
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	u, err := url.Parse(addr)
	if err != nil || u.Host == "" || u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("-addr %q: want a URL such as %s", addr, defaultAddr)
	}
	return &client{base: strings.TrimSuffix(u.String(), "/"), token: token, http: &http.Client{Timeout: timeout}}, nil
}

// refusedError is an error answer of the API.
type refusedError struct {
	status int
	msg    string
}

func (e *refusedError) Error() string { return fmt.Sprintf("%s (HTTP %d)", e.msg, e.status) }

// unreachableError is a request that got no answer.
type unreachableError struct{ err error }

func (e *unreachableError) Error() string { return "cannot reach the server: " + e.err.Error() }

// usageError is a command line that makes no sense, found after parsing.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usageErrorf(format string, a ...any) error { return &usageError{fmt.Sprintf(format, a...)} }

func exitCode(err error) int {
	var u *unreachableError
	var us *usageError
	switch {
	case errors.As(err, &u):
		return exitUnreachable
	case errors.As(err, &us):
		return exitUsage
	}
	return exitRefused
}

// do sends a request and returns the body of a 2xx answer; body, when not
// nil, is sent as JSON.
func (c *client) do(method, path string, query url.Values, body any) ([]byte, error) {
	target := c.base + path
	if len(query) > 0 {
		target += "?" + query.Encode()
	}
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, target, r)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, target, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, &unreachableError{err}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, &unreachableError{fmt.Errorf("read answer to %s %s: %w", method, path, err)}
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return data, nil
	}
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(data, &e) != nil || e.Error == "" {
		// Not the admin API (a proxy, another server on the port).
		e.Error = strings.TrimSpace(string(data))
		if e.Error == "" {
			e.Error = http.StatusText(resp.StatusCode)
		}
	}
	return nil, &refusedError{status: resp.StatusCode, msg: e.Error}
}

// get fetches path into v and returns the raw answer as well.
func (c *client) get(path string, query url.Values, v any) ([]byte, error) {
	data, err := c.do("GET", path, query, nil)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return nil, fmt.Errorf("GET %s: unexpected answer: %w", path, err)
	}
	return data, nil
}

// filter keeps the non-empty values of kv (name, value, name, value ...).
func filter(kv ...string) url.Values {
	q := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" {
			q.Set(kv[i], kv[i+1])
		}
	}
	return q
}
