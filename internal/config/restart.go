package config

import (
	"reflect"
	"strconv"
	"strings"
)

// RestartNeeded names, in schema order, the keys outside [extension.*] whose
// values differ between the running configuration and next: what a reload
// reads but cannot apply, since listeners, store, bounds, limits and the
// rest are set up once at start. It walks the schema rather than a list,
// so a key added later is covered too. A change in the number of
// [[listen]] entries is "listen"; a list or table (domains, xmpp.domains)
// is named whole.
func RestartNeeded(running, next *Config) []string {
	var keys []string
	a, b := reflect.ValueOf(running).Elem(), reflect.ValueOf(next).Elem()
	for i := 0; i < a.NumField(); i++ {
		switch f := a.Type().Field(i); {
		case !f.IsExported(), f.Name == "File", f.Name == "Dir", f.Name == "Extension":
		default:
			for _, k := range changed(strings.ToLower(f.Name), a.Field(i), b.Field(i)) {
				if k != "rls.services" { // read again by every reload
					keys = append(keys, k)
				}
			}
		}
	}
	return keys
}

// changed compares the values of key, table by table down to the values.
func changed(key string, a, b reflect.Value) []string {
	switch {
	case a.Kind() == reflect.Struct && a.Type() != reflect.TypeFor[Duration]():
		var keys []string
		for i := 0; i < a.NumField(); i++ {
			if tag, _, _ := strings.Cut(a.Type().Field(i).Tag.Get("toml"), ","); tag != "" && tag != "-" {
				keys = append(keys, changed(key+"."+tag, a.Field(i), b.Field(i))...)
			}
		}
		return keys
	case a.Kind() == reflect.Slice && a.Type().Elem().Kind() == reflect.Struct:
		if a.Len() != b.Len() {
			return []string{key}
		}
		var keys []string
		for i := 0; i < a.Len(); i++ {
			keys = append(keys, changed(key+"."+strconv.Itoa(i), a.Index(i), b.Index(i))...)
		}
		return keys
	case (a.Kind() == reflect.Slice || a.Kind() == reflect.Map) && a.Len() == 0 && b.Len() == 0:
		return nil // absent and empty say the same
	case reflect.DeepEqual(a.Interface(), b.Interface()):
		return nil
	}
	return []string{key}
}
