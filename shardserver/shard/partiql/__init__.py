"""DynamoDB's PartiQL, sans I/O: ``lexer`` (tokens), ``ast`` (the tree), ``parser`` (text to
tree), ``expressions`` (values and conditions as DynamoDB expression text) and ``translate``
(a tree, a table schema and Parameters to the DynamoDB request that runs it).  Nothing here
reads or writes items; shardserver.shard.executor.partiql runs the requests through the
ordinary operations.
"""
