"""certfed registry: enrolment, the federation CA, the signed directory and the locator index.

Also home of what every certfed service shares about trust and transport (errors, mTLS
identities, the gRPC server factory), since the registry defines the federation's trust.
"""
