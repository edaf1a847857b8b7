package server

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/presenced/presenced/abi"
)

// CommandError is a command the module refused, with the SIP-style code
// it gave (400 for bad arguments).
type CommandError struct {
	Code   uint32
	Reason string
}

func (e *CommandError) Error() string { return fmt.Sprintf("%d %s", e.Code, e.Reason) }

// Command runs an admin command of the module serving event, for one
// resource (e.g. "approve" a pending watcher of a presentity), or for
// every resource of the package when resource is "" (e.g. a reset). The module
// sees every watcher of the resource and may change its state, authorize
// or reject watchers, and render for them; the change is committed before
// Command returns, and the NOTIFYs follow. It returns the module's reason
// text, its answer for an operator.
func (s *Server) Command(event, resource, name string, args map[string]string) (string, error) {
	ep := s.cat().packages[event]
	if ep == nil {
		return "", fmt.Errorf("event package %q is not served", event)
	}
	if !slices.Contains(ep.mod.Manifest().Commands, name) {
		return "", fmt.Errorf("extension %s has no command %q (it has %v)", ep.mod.Name(), name, ep.mod.Manifest().Commands)
	}
	if resource != "" {
		return s.command(ep, resource, name, args)
	}
	var answers []string
	for _, key := range s.resourceKeys(ep.name) {
		uri := key.uri
		a, err := s.command(ep, uri, name, args)
		if err != nil {
			return strings.Join(answers, "\n"), fmt.Errorf("%s: %w", uri, err)
		}
		if a != "" {
			answers = append(answers, a)
		}
	}
	return strings.Join(answers, "\n"), nil
}

// Input hands the module serving event an input for resource from a
// source other than SIP (an XMPP presence, op abi.OpXMPP): the module sees
// every watcher, the change is committed, and the watchers are notified.
func (s *Server) Input(event, resource string, in abi.Request) error {
	ep := s.cat().packages[event]
	if ep == nil {
		return fmt.Errorf("event package %q is not served", event)
	}
	res, err := s.feed(ep, resource, in)
	var rf *refusal
	if errors.As(err, &rf) {
		return fmt.Errorf("extension %s refused %s input: %d %s", ep.mod.Name(), in.Op, res.Code, res.Reason)
	}
	return err
}

func (s *Server) command(ep *eventPackage, resource, name string, args map[string]string) (string, error) {
	res, err := s.feed(ep, resource, abi.Request{Op: abi.OpCommand, Command: &abi.Command{Name: name, Args: args}})
	var rf *refusal
	if errors.As(err, &rf) {
		return "", &CommandError{Code: res.Code, Reason: res.Reason}
	}
	if err != nil {
		return "", err
	}
	return res.Reason, nil
}

// feed runs a non-SIP input on a resource with all its watchers and, if
// the module accepts it, commits, applies and emits the answer. A module
// refusal is a *refusal, returned with the module's answer.
func (s *Server) feed(ep *eventPackage, resource string, in abi.Request) (*abi.Response, error) {
	r := s.lockResource(ep, resource)
	defer s.release(r)
	c := s.newChange()
	res, err := c.propose(r, in)
	if err != nil {
		return res, err
	}
	return res, c.run()
}
