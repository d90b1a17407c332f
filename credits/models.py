# The ledger arrives with the credits issue.
