"""certfed registry: enrolment, federation CA, signed directory, locator index, witness."""
