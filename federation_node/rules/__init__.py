"""Pure rules over plain data: entitlement dates, policy, minimisation, input checks."""
