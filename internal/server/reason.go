package server

// reasonPhrase is the RFC 3261 (and RFC 3265/3903/6665) reason phrase for
// the codes presenced sends; sipgo leaves the phrase to the caller.
func reasonPhrase(code int) string {
	switch code {
	case 200:
		return "OK"
	case 400:
		return "Bad Request"
	case 401:
		return "Unauthorized"
	case 403:
		return "Forbidden"
	case 404:
		return "Not Found"
	case 405:
		return "Method Not Allowed"
	case 406:
		return "Not Acceptable"
	case 412:
		return "Conditional Request Failed"
	case 413:
		return "Request Entity Too Large"
	case 415:
		return "Unsupported Media Type"
	case 416:
		return "Unsupported URI Scheme"
	case 423:
		return "Interval Too Brief"
	case 481:
		return "Call/Transaction Does Not Exist"
	case 489:
		return "Bad Event"
	case 500:
		return "Server Internal Error"
	case 503:
		return "Service Unavailable"
	case 505:
		return "Version Not Supported"
	}
	switch {
	case code < 300:
		return "OK"
	case code < 500:
		return "Request Failed"
	default:
		return "Server Error"
	}
}
