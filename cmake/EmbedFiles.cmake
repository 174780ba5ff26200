# ktstr_embed_files(TARGET FUNCTION HEADER FILES...): a static library TARGET holding FILES
# (relative to the calling folder) as byte arrays, reachable through ktstr::FUNCTION(),
# which HEADER declares. cmake/embed.cmake writes the source at build time.
function(ktstr_embed_files target function header)
  set(files ${ARGN})
  set(embedded ${CMAKE_CURRENT_BINARY_DIR}/${target}.cpp)
  list(TRANSFORM files PREPEND ${CMAKE_CURRENT_SOURCE_DIR}/ OUTPUT_VARIABLE paths)
  string(REPLACE ";" "|" file_list "${files}") # a list would not survive the shell
  add_custom_command(
    OUTPUT ${embedded}
    COMMAND ${CMAKE_COMMAND} -DOUTPUT=${embedded} -DBASE=${CMAKE_CURRENT_SOURCE_DIR}
            -DFILES=${file_list} -DFUNCTION=${function} -DHEADER=${header}
            -P ${PROJECT_SOURCE_DIR}/cmake/embed.cmake
    DEPENDS ${paths} ${PROJECT_SOURCE_DIR}/cmake/embed.cmake
    COMMENT "Embedding ${function}"
    VERBATIM)
  add_library(${target} STATIC ${embedded})
  target_include_directories(${target} PUBLIC ${PROJECT_SOURCE_DIR}/include)
endfunction()
