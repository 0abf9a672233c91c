package activities

import (
	"net/http"
	"strconv"
)

// Webhook is an HTTP endpoint that receives notifications as JSON POSTs.
type Webhook struct {
	URL    string
	Client *http.Client // default: http.DefaultClient with the activity's deadline
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
