"""`batigate`: the technician's and the operator's command line."""
