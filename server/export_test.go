package server

// The gateway's internal metadata keys, for the external tests that check
// a caller cannot inject them.
const (
	MDBrowser       = mdBrowser
	MDRefreshCookie = mdRefreshCookie
	MDCSRFRejected  = mdCSRFRejected
)
