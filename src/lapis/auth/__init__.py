"""Azure RBAC for both planes (issue #4).

    rbac      built-in role definitions (roles.json), Azure's wildcard matching,
              scopes and inheritance, and the Authorizer (5 s cache)
    actions   the data action and route template of each data-plane operation,
              and arm_permission(method, path): the ARM action + scope a request needs
    store     the role_assignments table (migrations/004_rbac.sql)
    routes    ARM's Microsoft.Authorization roleAssignments / roleDefinitions routes
"""
