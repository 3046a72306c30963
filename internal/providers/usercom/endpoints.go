package usercom

// Endpoint names the client reports its calls under (metrics, logs). The
// user.com emulator (internal/providers/usercom/emulator) counts calls
// under the same names.
const (
	EndpointUpsert  = "users/update_or_create/"
	EndpointMass    = "users/mass_update_custom_attributes/"
	EndpointPerUser = "users/{id}/set_multiple_attributes/"
	EndpointDelete  = "users-by-id/{custom_id}/"
	EndpointList    = "users/"
	// EndpointRead is the read of one user by custom_id, the same path as
	// EndpointDelete with GET.
	EndpointRead = "GET users-by-id/{custom_id}/"
)
