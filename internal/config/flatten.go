package config

import (
	"errors"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// flatten renders the opaque table m into out as documented on
// Extension.Config. On error it returns the (dotted, relative) key at fault.
func flatten(prefix string, m map[string]any, out map[string]string) (string, error) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys) // the first error is the same on every run
	for _, k := range keys {
		key := k
		if prefix != "" {
			key = prefix + "." + k
		}
		if sub, ok := m[k].(map[string]any); ok {
			if bad, err := flatten(key, sub, out); err != nil {
				return bad, err
			}
			continue
		}
		s, err := render(m[k])
		if err != nil {
			return key, err
		}
		// A quoted key with a dot ("a.b" = 1) would meet [a] b = 2 here.
		if _, dup := out[key]; dup {
			return key, errors.New("defined twice once nested tables are flattened to dotted keys")
		}
		out[key] = s
	}
	return "", nil
}

// render spells one value as the module receives it.
func render(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case bool:
		return strconv.FormatBool(x), nil
	case float64:
		switch {
		case math.IsNaN(x):
			return "nan", nil
		case math.IsInf(x, 1):
			return "inf", nil
		case math.IsInf(x, -1):
			return "-inf", nil
		}
		s := strconv.FormatFloat(x, 'g', -1, 64)
		if !strings.ContainsAny(s, ".e") {
			s += ".0" // still a float to the module: 3.0, not 3
		}
		return s, nil
	case time.Time:
		// toml marks local date-times, dates and times with these zones.
		switch x.Location().String() {
		case "datetime-local":
			return x.Format("2006-01-02T15:04:05.999999999"), nil
		case "date-local":
			return x.Format("2006-01-02"), nil
		case "time-local":
			return x.Format("15:04:05.999999999"), nil
		}
		return x.Format(time.RFC3339Nano), nil
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			switch e.(type) {
			case []any, map[string]any:
				return "", errors.New("an array of arrays or tables cannot be passed to a module")
			}
			parts[i], _ = render(e)
		}
		return strings.Join(parts, ","), nil
	}
	return "", errors.New("an array of tables cannot be passed to a module")
}
