package main

import "github.com/presenced/presenced/sdk"

// Watcher authorization (RFC 3857's pending/active/rejected), decided here
// rather than by the host so that a module with another notion of who may
// see what can replace it.

const (
	policyAllow      = "allow"
	policySameDomain = "same-domain"
	policyConfirm    = "confirm"
)

// policy is the config's part of the decision: a default and two lists.
type policy struct {
	mode         string
	allow, block sdk.WatcherList
}

func parsePolicy(c *sdk.ConfigReader) policy {
	return policy{
		mode:  c.Choice("policy", policyAllow, policyAllow, policySameDomain, policyConfirm),
		allow: c.Watchers("allow", ""),
		block: c.Watchers("block", ""),
	}
}

// decide is the status of a new watcher of resource. The presentity's own
// decisions (approve, reject) come before the config's, the presentity
// itself is always allowed, and a block wins over an allow at each level.
func (p *policy) decide(st *state, resource, watcherURI string) string {
	switch {
	case st.Block.Has(watcherURI, resource):
		return sdk.StatusRejected
	case st.Allow.Has(watcherURI, resource):
		return sdk.StatusActive
	}
	status := p.configured(resource, watcherURI)
	// Whether the watcher is the presentity matters only when the config
	// would not let it in: reducing the two URIs costs about 1 µs each in
	// a guest, at every new watcher under the default policy.
	if status != sdk.StatusActive {
		if key := sdk.ResourceKey(watcherURI); key != "" && key == sdk.ResourceKey(resource) {
			return sdk.StatusActive
		}
	}
	return status
}

// configured is the config's decision alone.
func (p *policy) configured(resource, watcherURI string) string {
	switch {
	case p.block.Has(watcherURI, resource):
		return sdk.StatusRejected
	case p.allow.Has(watcherURI, resource):
		return sdk.StatusActive
	}
	switch p.mode {
	case policySameDomain:
		if (sdk.WatcherList{sdk.SameDomain}).Has(watcherURI, resource) {
			return sdk.StatusActive
		}
		return sdk.StatusPending
	case policyConfirm:
		return sdk.StatusPending
	}
	return sdk.StatusActive
}

// uniform reports whether decide gives every new watcher of a presentity
// in state st the same answer, whatever its URI: what lets the host reuse
// one watcher's first document for the next (ABI.md §6).
func (p *policy) uniform(st *state) bool {
	return p.mode == policyAllow && len(p.block) == 0 && len(st.Block) == 0
}
